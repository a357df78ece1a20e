//! Events: the one publisher every controller reports through.

use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use spotwright_api::NodeClaim;

use super::REPORTER;

/// Events longer than this are cut (the API server refuses notes over 1 KiB).
const MAX_NOTE: usize = 1000;

/// Publishes Events as `spotwright-provisioner`; a failure to publish is
/// logged, never fatal.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

/// One Event: its type, reason, the action taken, and what happened.
pub struct Notice<'a> {
    pub type_: EventType,
    pub reason: &'a str,
    pub action: &'a str,
    pub note: String,
}

impl<'a> Notice<'a> {
    pub fn normal(reason: &'a str, action: &'a str, note: String) -> Self {
        Notice {
            type_: EventType::Normal,
            reason,
            action,
            note,
        }
    }

    pub fn warning(reason: &'a str, action: &'a str, note: String) -> Self {
        Notice {
            type_: EventType::Warning,
            reason,
            action,
            note,
        }
    }
}

impl Events {
    pub fn new(client: Client) -> Self {
        let reporter = Reporter {
            controller: REPORTER.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Events {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes `notice` about `reference`.
    pub async fn publish(&self, reference: &ObjectReference, notice: Notice<'_>) {
        let event = Event {
            type_: notice.type_,
            reason: notice.reason.to_owned(),
            note: Some(notice.note.chars().take(MAX_NOTE).collect()),
            action: notice.action.to_owned(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, reference).await {
            tracing::debug!(error = %err, reason = notice.reason, "event not recorded");
        }
    }

    /// Publishes `notice` about an object.
    pub async fn about<K: Resource<DynamicType = ()>>(&self, object: &K, notice: Notice<'_>) {
        self.publish(&object.object_ref(&()), notice).await;
    }

    /// The same Event on the claim and, when it has one, on its Node: users
    /// look at either.
    pub async fn on_claim_and_node(
        &self,
        claim: &NodeClaim,
        node: Option<&Node>,
        notice: Notice<'_>,
    ) {
        if let Some(node) = node {
            let copy = Notice {
                type_: notice.type_,
                reason: notice.reason,
                action: notice.action,
                note: notice.note.clone(),
            };
            self.about(node, copy).await;
        }
        self.about(claim, notice).await;
    }
}
