//! Spot interruptions: EventBridge rules deliver EC2 and AWS Health events to
//! an SQS queue (`--interruption-queue`); this loop reads it.
//!
//! - A Spot interruption warning, an EC2 scheduled change, or a state change
//!   to stopping/stopped/shutting-down/terminated of a Spotwright instance:
//!   its offering is marked unavailable (so the replacement goes elsewhere)
//!   and its NodeClaim deleted at once. The termination finalizer then
//!   taints, cordons, drains and terminates, and the evicted pods, pending
//!   again, are launched for by the provisioning pass in parallel. A Spot
//!   interruption is also recorded as an interruption Event
//!   ([`spotwright_api::interruption`]) for the extender's risk score.
//! - A rebalance recommendation: an Event on the claim, the offering marked
//!   unavailable, and the claim annotated
//!   [`keys::REBALANCE_ANNOTATION`]: voluntary disruption
//!   ([`crate::disruption`]) then launches its replacement first and drains
//!   it, within the NodePool's `Rebalance` budget.
//! - Anything else well-formed is ignored; malformed bodies are counted and
//!   dropped. Every message is deleted once handled, whatever it said, so
//!   nothing blocks the queue; one whose handling failed half-way is deleted
//!   too (the next signal — the state change — catches up).
//!
//! SQS errors back off (1 s doubling to 1 min) and retry; the loop never ends.

pub mod message;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use spotwright_api::interruption::InterruptionRecord;
use spotwright_api::keys::CapacityType;
use spotwright_api::{keys, NodeClaim};

use crate::controllers::registration::{record, reporter, REPORTER};
use crate::controllers::termination::instance_id;
use crate::metrics::Metrics;
use crate::provisioning::ec2::Ec2Launcher;
use message::{is_stopping_state, Notice};

/// How the loop reads its queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterruptionSettings {
    /// The queue's URL.
    pub queue_url: String,
    /// Namespace the interruption Events are written to (the provisioner's).
    pub events_namespace: String,
    /// Long-poll wait of one ReceiveMessage (SQS allows 0..=20 s).
    pub wait_seconds: i32,
}

impl InterruptionSettings {
    pub fn new(queue_url: String, events_namespace: String) -> Self {
        InterruptionSettings {
            queue_url,
            events_namespace,
            wait_seconds: 20,
        }
    }
}

/// Messages per ReceiveMessage (the SQS maximum).
const MAX_MESSAGES: i32 = 10;
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What handling one message came to (the `outcome` metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Nothing to do (ignored kind, a state that is not a departure).
    Ignored,
    /// No NodeClaim has the instance.
    UnknownInstance,
    /// The claim was already being deleted.
    AlreadyDeleting,
    /// A rebalance: the claim is marked for replacement.
    Marked,
    /// The claim was deleted.
    Deleted,
    /// The body was not a usable event.
    Malformed,
    /// A Kubernetes call failed.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ignored => "ignored",
            Outcome::UnknownInstance => "unknown_instance",
            Outcome::AlreadyDeleting => "already_deleting",
            Outcome::Marked => "marked",
            Outcome::Deleted => "deleted",
            Outcome::Malformed => "malformed",
            Outcome::Error => "error",
        }
    }
}

/// Reads the queue forever.
pub async fn run(
    client: Client,
    sqs: aws_sdk_sqs::Client,
    settings: InterruptionSettings,
    launcher: Arc<Ec2Launcher>,
    metrics: Metrics,
) {
    tracing::info!(queue = %settings.queue_url, "reading the interruption queue");
    let recorder = Recorder::new(client.clone(), reporter());
    let handler = Handler {
        client,
        launcher,
        recorder,
        events_namespace: settings.events_namespace.clone(),
    };
    let mut backoff = BACKOFF_MIN;
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&settings.queue_url)
            .max_number_of_messages(MAX_MESSAGES)
            .wait_time_seconds(settings.wait_seconds)
            .send()
            .await;
        let messages = match received {
            Ok(output) => {
                backoff = BACKOFF_MIN;
                output.messages.unwrap_or_default()
            }
            Err(err) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&err), retry_in = ?backoff, "ReceiveMessage failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        for message in messages {
            let (kind, outcome) = handler.handle(message.body().unwrap_or_default()).await;
            metrics
                .interruption_messages
                .with_label_values(&[kind, outcome.as_str()])
                .inc();
            let Some(receipt) = message.receipt_handle() else {
                continue;
            };
            if let Err(err) = sqs
                .delete_message()
                .queue_url(&settings.queue_url)
                .receipt_handle(receipt)
                .send()
                .await
            {
                // It comes back after its visibility timeout and is handled
                // again: every action is idempotent.
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&err), "DeleteMessage failed");
            }
        }
    }
}

struct Handler {
    client: Client,
    launcher: Arc<Ec2Launcher>,
    recorder: Recorder,
    events_namespace: String,
}

impl Handler {
    /// Parses and acts on one body: (kind, outcome) for the metric.
    async fn handle(&self, body: &str) -> (&'static str, Outcome) {
        let notice = match message::parse(body) {
            Ok(notice) => notice,
            Err(err) => {
                tracing::warn!(error = %err, "dropping a malformed interruption message");
                return ("malformed", Outcome::Malformed);
            }
        };
        let kind = notice.kind();
        if let Notice::StateChange { state, .. } = &notice {
            if !is_stopping_state(state) {
                return (kind, Outcome::Ignored);
            }
        }
        if let Notice::Ignored(what) = &notice {
            tracing::debug!(event = %what, "ignoring an event");
            return (kind, Outcome::Ignored);
        }
        let claims = match Api::<NodeClaim>::all(self.client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(list) => list.items,
            Err(err) => {
                tracing::warn!(error = %err, "listing NodeClaims failed; dropping the notice");
                return (kind, Outcome::Error);
            }
        };
        let mut outcome = Outcome::Ignored;
        for id in notice.instance_ids() {
            let one = match claims
                .iter()
                .find(|c| provider_instance(c).is_some_and(|p| p == id))
            {
                None => {
                    tracing::debug!(
                        instance = id,
                        kind,
                        "notice for an instance that is not Spotwright's"
                    );
                    Outcome::UnknownInstance
                }
                Some(claim) => self.act(&notice, claim).await,
            };
            outcome = outcome.max(one);
        }
        (kind, outcome)
    }

    async fn act(&self, notice: &Notice, claim: &NodeClaim) -> Outcome {
        let name = claim.name_any();
        let offering = offering_of(claim);
        let deleting = claim.meta().deletion_timestamp.is_some();
        tracing::info!(claim = %name, kind = notice.kind(), deleting, "interruption notice");
        if let Notice::SpotInterruption { instance_id } = notice {
            // Recorded even when the claim is already going: the pool was
            // interrupted all the same.
            if let Some((capacity_type, instance_type, zone)) = &offering {
                self.launcher
                    .mark_offering_unavailable(*capacity_type, instance_type, zone);
                self.record_interruption(claim, instance_id, instance_type, zone)
                    .await;
            }
        }
        if deleting {
            return Outcome::AlreadyDeleting;
        }
        if !matches!(notice, Notice::SpotInterruption { .. }) {
            if let Some((capacity_type, instance_type, zone)) = &offering {
                self.launcher
                    .mark_offering_unavailable(*capacity_type, instance_type, zone);
            }
        }
        let reference = claim.object_ref(&());
        if let Notice::Rebalance { instance_id } = notice {
            record(
                &self.recorder,
                &reference,
                EventType::Warning,
                "RebalanceRecommended",
                "Disrupt",
                format!("EC2 recommends rebalancing instance {instance_id}: a replacement is launched first, then the node drains, within the NodePool's disruption budget"),
            )
            .await;
            return match mark_rebalance(&self.client, claim).await {
                Ok(()) => Outcome::Marked,
                Err(err) => {
                    tracing::warn!(claim = %name, error = %err, "marking a NodeClaim for rebalancing failed");
                    Outcome::Error
                }
            };
        } else {
            let (reason, what) = match notice {
                Notice::SpotInterruption { .. } => {
                    ("SpotInterrupted", "a Spot interruption warning")
                }
                Notice::ScheduledChange { .. } => ("ScheduledChange", "an EC2 scheduled change"),
                _ => ("InstanceStopping", "the instance stopping"),
            };
            record(
                &self.recorder,
                &reference,
                EventType::Warning,
                reason,
                "Disrupt",
                format!("Deleting the NodeClaim after {what}: it drains now and its pods are provisioned again"),
            )
            .await;
        }
        match delete_claim(&self.client, claim).await {
            Ok(()) => Outcome::Deleted,
            Err(err) => {
                tracing::warn!(claim = %name, error = %err, "deleting an interrupted NodeClaim failed");
                Outcome::Error
            }
        }
    }

    /// Writes the interruption record; a duplicate (the same message read
    /// twice) is fine, any other failure is logged.
    async fn record_interruption(
        &self,
        claim: &NodeClaim,
        instance_id: &str,
        instance_type: &str,
        zone: &str,
    ) {
        let record = InterruptionRecord {
            instance_type: instance_type.to_owned(),
            zone: zone.to_owned(),
            at_unix_seconds: k8s_openapi::jiff::Timestamp::now().as_second(),
            count: 1,
        };
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| REPORTER.to_owned());
        let event = record.to_event(
            &event_name(&claim.name_any(), instance_id),
            &self.events_namespace,
            claim.object_ref(&()),
            REPORTER,
            &instance,
        );
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.events_namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => tracing::warn!(error = %err, "writing the interruption record failed"),
        }
    }
}

/// The record's name: one per (claim, instance), so a redelivered message
/// does not count twice.
pub fn event_name(claim: &str, instance_id: &str) -> String {
    format!("{claim}.{instance_id}.interrupted").to_lowercase()
}

/// The instance id of the claim's providerID.
fn provider_instance(claim: &NodeClaim) -> Option<&str> {
    claim
        .status
        .as_ref()
        .and_then(|s| s.provider_id.as_deref())
        .and_then(instance_id)
}

/// (capacity type, instance type, zone) of the claim's instance, when known.
pub fn offering_of(claim: &NodeClaim) -> Option<(CapacityType, String, String)> {
    let status = claim.status.as_ref()?;
    let capacity_type = status
        .capacity_type
        .as_deref()
        .or_else(|| {
            claim
                .labels()
                .get(keys::CAPACITY_TYPE_LABEL)
                .map(String::as_str)
        })
        .and_then(CapacityType::parse)?;
    let instance_type = status
        .instance_type
        .clone()
        .or_else(|| claim.labels().get(keys::INSTANCE_TYPE_LABEL).cloned())?;
    let zone = status
        .zone
        .clone()
        .or_else(|| claim.labels().get(keys::ZONE_LABEL).cloned())?;
    Some((capacity_type, instance_type, zone))
}

async fn delete_claim(client: &Client, claim: &NodeClaim) -> Result<(), kube::Error> {
    let api: Api<NodeClaim> = Api::all(client.clone());
    let mut params = DeleteParams::background();
    // Never delete a newer claim of the same name.
    params.preconditions = Some(kube::api::Preconditions {
        uid: claim.uid(),
        resource_version: None,
    });
    match api.delete(&claim.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err),
    }
}

/// Annotates the claim with when EC2 recommended rebalancing; a claim
/// marked before keeps its first time.
async fn mark_rebalance(client: &Client, claim: &NodeClaim) -> Result<(), kube::Error> {
    if claim.annotations().contains_key(keys::REBALANCE_ANNOTATION) {
        return Ok(());
    }
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({"metadata": {"annotations": {keys::REBALANCE_ANNOTATION: now}}});
    Api::<NodeClaim>::all(client.clone())
        .patch(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use spotwright_api::v1alpha1::NodeClaimStatus;

    use super::*;

    #[test]
    fn outcomes_order_and_names() {
        assert!(Outcome::Error > Outcome::Deleted && Outcome::Deleted > Outcome::UnknownInstance);
        assert_eq!(Outcome::UnknownInstance.as_str(), "unknown_instance");
        assert_eq!(
            event_name("Default-x", "i-0AB"),
            "default-x.i-0ab.interrupted"
        );
    }

    #[test]
    fn offering_from_status_then_labels() {
        let mut claim = NodeClaim::new("c", Default::default());
        assert_eq!(offering_of(&claim), None);
        claim.status = Some(NodeClaimStatus {
            provider_id: Some("aws:///us-east-1a/i-0abc".into()),
            instance_type: Some("m5.large".into()),
            zone: Some("us-east-1a".into()),
            capacity_type: Some("spot".into()),
            ..NodeClaimStatus::default()
        });
        assert_eq!(
            offering_of(&claim),
            Some((CapacityType::Spot, "m5.large".into(), "us-east-1a".into()))
        );
        assert_eq!(provider_instance(&claim), Some("i-0abc"));
        claim.status.as_mut().unwrap().zone = None;
        assert_eq!(offering_of(&claim), None);
        claim
            .labels_mut()
            .insert(keys::ZONE_LABEL.into(), "us-east-1b".into());
        assert_eq!(offering_of(&claim).unwrap().2, "us-east-1b");
    }
}
