//! The room a new NodeClaim holds for the pods it was launched for.
//!
//! The provisioner writes it on the claim when it creates it (no extra API
//! call); the extender reads it and keeps that room on the claim's node for
//! those pods, so that the scheduler does not fill a fresh node with pods
//! that were solved onto another one still on its way. Without it, a burst
//! ends with pods whose own node was taken by others, and more nodes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::{Deserialize, Serialize};

use crate::keys;

/// Annotation on a NodeClaim: JSON of a [`Reservation`].
pub const ANNOTATION: &str = keys::RESERVED_FOR_ANNOTATION;

/// What a claim was launched for: the pods' UIDs and what they request
/// together (DaemonSet overhead excluded: DaemonSet pods are never held off).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reservation {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// Pod UIDs.
    pub pods: Vec<String>,
    /// Per pod, in the order of `pods`: the UID of its controller (its
    /// ReplicaSet, StatefulSet, Job...), whose pods are interchangeable: any
    /// of them may take the room held for another. Empty for a pod without
    /// a controller; absent (older writers) means no pod has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// A pod's group in a reservation: the UID of its controller (the owner
/// with `controller: true`), if it has one. The provisioner writes it and
/// the extender reads bound pods by the same rule.
pub fn group_of(owners: &[OwnerReference]) -> Option<&str> {
    owners
        .iter()
        .find(|o| o.controller == Some(true) && !o.uid.is_empty())
        .map(|o| o.uid.as_str())
}

/// The annotation does not hold a reservation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("annotation {ANNOTATION} is not a reservation: {0}")]
pub struct ReservationError(String);

impl Reservation {
    pub fn to_annotation(&self) -> String {
        // Plain numbers and strings: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(value: &str) -> Result<Reservation, ReservationError> {
        serde_json::from_str(value).map_err(|e| ReservationError(e.to_string()))
    }

    /// Adds a pod: its UID, what it requests and its group (see
    /// [`group_of`]). Whether it was added: a pod already in is not again.
    /// `groups` stays aligned with `pods`, and absent while no pod has one.
    pub fn add(
        &mut self,
        uid: &str,
        cpu_millis: u64,
        memory_bytes: u64,
        group: Option<&str>,
    ) -> bool {
        if self.pods.iter().any(|p| p == uid) {
            return false;
        }
        let group = group.unwrap_or_default();
        if !group.is_empty() || !self.groups.is_empty() {
            self.groups.resize(self.pods.len(), String::new());
            self.groups.push(group.to_owned());
        }
        self.cpu_millis = self.cpu_millis.saturating_add(cpu_millis);
        self.memory_bytes = self.memory_bytes.saturating_add(memory_bytes);
        self.pods.push(uid.to_owned());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_annotation_reads_back_as_written() {
        let reservation = Reservation {
            cpu_millis: 1500,
            memory_bytes: 3 << 30,
            pods: vec!["uid-a".to_owned(), "uid-b".to_owned()],
            groups: vec!["rs-1".to_owned(), String::new()],
        };
        let value = reservation.to_annotation();
        assert_eq!(
            value,
            r#"{"cpuMillis":1500,"memoryBytes":3221225472,"pods":["uid-a","uid-b"],"groups":["rs-1",""]}"#
        );
        assert_eq!(Reservation::parse(&value), Ok(reservation));
        let without_groups = r#"{"cpuMillis":1,"memoryBytes":2,"pods":["uid-a"]}"#;
        assert_eq!(
            Reservation::parse(without_groups).map(|r| r.groups),
            Ok(vec![]),
            "an older writer's annotation still reads"
        );
    }

    #[test]
    fn pods_added_keep_groups_aligned_and_come_in_once() {
        let mut reservation = Reservation::default();
        assert!(reservation.add("uid-a", 100, 1 << 20, None));
        assert!(reservation.groups.is_empty(), "no pod has a group yet");
        assert!(reservation.add("uid-b", 200, 2 << 20, Some("rs-1")));
        assert!(!reservation.add("uid-a", 100, 1 << 20, None), "already in");
        assert!(reservation.add("uid-c", 300, 3 << 20, None));
        assert_eq!(reservation.pods, ["uid-a", "uid-b", "uid-c"]);
        assert_eq!(reservation.groups, ["", "rs-1", ""]);
        assert_eq!(
            (reservation.cpu_millis, reservation.memory_bytes),
            (600, 6 << 20)
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_annotation_named() {
        for bad in [
            "",
            "{}",
            "[1]",
            r#"{"cpuMillis":-1,"memoryBytes":0,"pods":[]}"#,
            r#"{"cpuMillis":1,"memoryBytes":0,"pods":[],"extra":1}"#,
        ] {
            let err = Reservation::parse(bad).expect_err(bad);
            assert!(err.to_string().contains(ANNOTATION), "{err}");
        }
    }
}
