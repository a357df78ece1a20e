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
use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use spotwright_api::interruption::InterruptionRecord;
use spotwright_api::keys::CapacityType;
use spotwright_api::{keys, NodeClaim};

use crate::act::aws::sqs::resolve_queue_url;
use crate::act::claims;
use crate::act::ec2_launcher::Ec2Launcher;
use crate::act::events::{self, Events};
use crate::act::REPORTER;
use crate::metrics::Metrics;
use crate::model::clock::SharedClock;
use crate::state::ClusterState;
use crate::Error;
use message::{is_stopping_state, Notice};

/// How the loop reads its queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterruptionSettings {
    /// The queue's URL, or its name (resolved with GetQueueUrl).
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

/// What the interruption loop works with.
pub struct Interruption {
    pub client: Client,
    pub state: ClusterState,
    pub events: Events,
    pub clock: SharedClock,
    pub sqs: aws_sdk_sqs::Client,
    pub launcher: Arc<Ec2Launcher>,
    pub metrics: Metrics,
    pub settings: InterruptionSettings,
}

/// Reads the queue forever.
pub async fn run(ctx: Interruption) {
    let Interruption {
        client,
        state,
        events,
        clock,
        sqs,
        launcher,
        metrics,
        settings,
    } = ctx;
    let settings = InterruptionSettings {
        queue_url: resolve_queue_url(&sqs, &settings.queue_url).await,
        ..settings
    };
    tracing::info!(queue = %settings.queue_url, "reading the interruption queue");
    state.ready().await;
    let handler = Handler {
        client,
        state,
        events,
        clock,
        launcher,
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
    state: ClusterState,
    events: Events,
    clock: SharedClock,
    launcher: Arc<Ec2Launcher>,
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
        let snapshot = self.state.snapshot();
        let mut outcome = Outcome::Ignored;
        for id in notice.instance_ids() {
            let one = match snapshot.claim_of_instance(id) {
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
        let offering = offering_of(claim);
        let deleting = claim.meta().deletion_timestamp.is_some();
        tracing::info!(claim = %claim.name_any(), kind = notice.kind(), deleting, "interruption notice");
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
        let result = match notice {
            Notice::Rebalance { instance_id } => self.rebalance(claim, instance_id).await,
            _ => self.delete(claim, notice).await,
        };
        result.unwrap_or_else(|err| {
            tracing::warn!(claim = %claim.name_any(), error = %err, "acting on an interruption notice failed");
            Outcome::Error
        })
    }

    /// A rebalance recommendation: the claim is marked, and disruption
    /// replaces it new node first.
    async fn rebalance(&self, claim: &NodeClaim, instance_id: &str) -> Result<Outcome, Error> {
        let note = format!("EC2 recommends rebalancing instance {instance_id}: a replacement is launched first, then the node drains, within the NodePool's disruption budget");
        let notice = events::Notice::warning("RebalanceRecommended", "Disrupt", note);
        self.events.about(claim, notice).await;
        // A claim marked before keeps its first time.
        if !claim.annotations().contains_key(keys::REBALANCE_ANNOTATION) {
            let at = self.clock.now().to_string();
            let mark = json!({"annotations": {keys::REBALANCE_ANNOTATION: at}});
            claims::patch_metadata(&self.client, claim, mark, false).await?;
        }
        Ok(Outcome::Marked)
    }

    /// The instance is going: the claim is deleted now, so it drains while
    /// its pods are provisioned again.
    async fn delete(&self, claim: &NodeClaim, notice: &Notice) -> Result<Outcome, Error> {
        let (reason, what) = match notice {
            Notice::SpotInterruption { .. } => ("SpotInterrupted", "a Spot interruption warning"),
            Notice::ScheduledChange { .. } => ("ScheduledChange", "an EC2 scheduled change"),
            _ => ("InstanceStopping", "the instance stopping"),
        };
        let note = format!(
            "Deleting the NodeClaim after {what}: it drains now and its pods are provisioned again"
        );
        let notice = events::Notice::warning(reason, "Disrupt", note);
        self.events.about(claim, notice).await;
        claims::delete(&self.client, claim).await?;
        Ok(Outcome::Deleted)
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
            at_unix_seconds: self.clock.now().as_second(),
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

#[cfg(test)]
mod tests {
    use spotwright_api::v1alpha1::NodeClaimStatus;

    use super::*;
    use crate::model::claim::{instance_id, provider_id};

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
        assert_eq!(provider_id(&claim).and_then(instance_id), Some("i-0abc"));
        claim.status.as_mut().unwrap().zone = None;
        assert_eq!(offering_of(&claim), None);
        claim
            .labels_mut()
            .insert(keys::ZONE_LABEL.into(), "us-east-1b".into());
        assert_eq!(offering_of(&claim).unwrap().2, "us-east-1b");
    }
}
