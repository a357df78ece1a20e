//! Interruption records: how the provisioner tells the rest of Spotwright
//! that a Spot instance of some pool was interrupted.
//!
//! A record is an `events.k8s.io/v1` Event (in any namespace; the
//! provisioner writes them to its own) that carries:
//! - the label `spotwright.io/interruption: "true"`, which is what watchers
//!   select on ([`LABEL_SELECTOR`]);
//! - the labels `node.kubernetes.io/instance-type` and
//!   `topology.kubernetes.io/zone`, naming the (instance type, zone) pool;
//! - `eventTime`: when the interruption happened (`series.lastObservedTime`
//!   wins when the Event is a series, and `metadata.creationTimestamp` stands
//!   in when neither is set);
//! - `series.count`, when present, as the number of interruptions it stands
//!   for (one otherwise);
//! - `reason: SpotInterrupted`, `action: Interrupt`, `type: Warning`, and
//!   `regarding` the NodeClaim (or Node) that was interrupted.
//!
//! Only the labels and the times are read back; the rest is for people
//! (`kubectl events`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

use crate::keys;

/// The label selector that picks interruption records out of all Events.
pub const LABEL_SELECTOR: &str = "spotwright.io/interruption=true";

/// One interruption of a Spot pool, read from an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterruptionRecord {
    /// EC2 instance type of the pool, such as `m5.large`.
    pub instance_type: String,
    /// Availability zone of the pool, such as `us-east-1a`.
    pub zone: String,
    /// When it happened, in seconds since the Unix epoch.
    pub at_unix_seconds: i64,
    /// How many interruptions the Event stands for (at least one).
    pub count: u32,
}

/// Why an Event is not a usable interruption record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InterruptionError {
    #[error("interruption event has no {0} label")]
    MissingLabel(&'static str),
    #[error("interruption event has no eventTime, series or creationTimestamp")]
    NoTime,
}

impl InterruptionRecord {
    /// Reads a record from an Event selected by [`LABEL_SELECTOR`].
    pub fn from_event(event: &Event) -> Result<Self, InterruptionError> {
        let labels = event.metadata.labels.as_ref();
        let label = |key: &'static str| {
            labels
                .and_then(|l| l.get(key))
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or(InterruptionError::MissingLabel(key))
        };
        let instance_type = label(keys::INSTANCE_TYPE_LABEL)?;
        let zone = label(keys::ZONE_LABEL)?;
        let at = event
            .series
            .as_ref()
            .map(|s| s.last_observed_time.0)
            .or_else(|| event.event_time.as_ref().map(|t| t.0))
            .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .ok_or(InterruptionError::NoTime)?;
        let count = event
            .series
            .as_ref()
            .map_or(1, |s| u32::try_from(s.count).unwrap_or(0).max(1));
        Ok(InterruptionRecord {
            instance_type,
            zone,
            at_unix_seconds: at.as_second(),
            count,
        })
    }

    /// The labels an interruption Event carries.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (keys::INTERRUPTION_LABEL.to_owned(), "true".to_owned()),
            (
                keys::INSTANCE_TYPE_LABEL.to_owned(),
                self.instance_type.clone(),
            ),
            (keys::ZONE_LABEL.to_owned(), self.zone.clone()),
        ])
    }

    /// The Event that records this interruption, for the writer (the
    /// provisioner): `name` in `namespace`, about `regarding`, written by
    /// `reporting_controller` (such as `spotwright.io/provisioner`) from
    /// `reporting_instance` (its pod name).
    pub fn to_event(
        &self,
        name: &str,
        namespace: &str,
        regarding: ObjectReference,
        reporting_controller: &str,
        reporting_instance: &str,
    ) -> Event {
        let at = k8s_openapi::jiff::Timestamp::from_second(self.at_unix_seconds)
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let what = regarding.name.clone().unwrap_or_default();
        Event {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                labels: Some(self.labels()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(at)),
            reason: Some(keys::INTERRUPTION_REASON.to_owned()),
            action: Some(keys::INTERRUPTION_ACTION.to_owned()),
            type_: Some("Warning".to_owned()),
            note: Some(format!(
                "Spot instance {what} of pool {} in {} was interrupted",
                self.instance_type, self.zone
            )),
            regarding: Some(regarding),
            reporting_controller: Some(reporting_controller.to_owned()),
            reporting_instance: Some(reporting_instance.to_owned()),
            ..Event::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::events::v1::EventSeries;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn record() -> InterruptionRecord {
        InterruptionRecord {
            instance_type: "m5.large".into(),
            zone: "us-east-1a".into(),
            at_unix_seconds: 1_790_000_000,
            count: 1,
        }
    }

    fn claim_ref() -> ObjectReference {
        ObjectReference {
            api_version: Some("spotwright.io/v1alpha1".into()),
            kind: Some("NodeClaim".into()),
            name: Some("default-abc12".into()),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn written_events_read_back() {
        let event = record().to_event(
            "default-abc12.1",
            "spotwright-system",
            claim_ref(),
            "spotwright.io/provisioner",
            "provisioner-0",
        );
        assert_eq!(InterruptionRecord::from_event(&event), Ok(record()));
        let labels = event.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[keys::INTERRUPTION_LABEL], "true");
        assert_eq!(LABEL_SELECTOR, format!("{}=true", keys::INTERRUPTION_LABEL));
        // The JSON an API server accepts for events.k8s.io/v1.
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["eventTime"], "2026-09-21T14:13:20.000000Z");
        assert_eq!(json["reason"], "SpotInterrupted");
        assert_eq!(json["reportingController"], "spotwright.io/provisioner");
    }

    #[test]
    fn series_and_creation_time_stand_in() {
        let mut event = record().to_event("e", "ns", claim_ref(), "c", "i");
        event.event_time = None;
        assert_eq!(
            InterruptionRecord::from_event(&event),
            Err(InterruptionError::NoTime)
        );
        event.metadata.creation_timestamp = Some(Time(Timestamp::from_second(100).unwrap()));
        assert_eq!(
            InterruptionRecord::from_event(&event)
                .unwrap()
                .at_unix_seconds,
            100
        );
        event.series = Some(EventSeries {
            count: 4,
            last_observed_time: MicroTime(Timestamp::from_second(200).unwrap()),
        });
        let read = InterruptionRecord::from_event(&event).unwrap();
        assert_eq!((read.at_unix_seconds, read.count), (200, 4));
    }

    #[test]
    fn events_without_the_pool_labels_are_refused() {
        let mut event = record().to_event("e", "ns", claim_ref(), "c", "i");
        event
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(keys::ZONE_LABEL);
        assert_eq!(
            InterruptionRecord::from_event(&event),
            Err(InterruptionError::MissingLabel(keys::ZONE_LABEL))
        );
    }
}
