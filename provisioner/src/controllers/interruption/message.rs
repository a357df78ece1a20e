//! What an SQS message from EventBridge says, as a [`Notice`]. Pure: no
//! I/O, and no input makes it panic.
//!
//! The bodies are EventBridge events (the SQS queue is the rule's target):
//!
//! ```json
//! {"version": "0", "id": "…", "detail-type": "EC2 Spot Instance Interruption Warning",
//!  "source": "aws.ec2", "account": "…", "time": "2026-11-25T13:00:00Z",
//!  "region": "us-east-1", "resources": ["arn:aws:ec2:us-east-1a:instance/i-0abc"],
//!  "detail": {"instance-id": "i-0abc", "instance-action": "terminate"}}
//! ```
//!
//! Read: Spot interruption warnings, rebalance recommendations and
//! instance state changes (`aws.ec2`), and AWS Health `scheduledChange`
//! events of the EC2 service (`aws.health`), whose affected entities are
//! instance ids. Any other well-formed event is [`Notice::Ignored`]; a body
//! that is not an event, or a known event without the fields it must carry,
//! is [`Malformed`].

use serde_json::Value;

pub const SPOT_INTERRUPTION: &str = "EC2 Spot Instance Interruption Warning";
pub const REBALANCE: &str = "EC2 Instance Rebalance Recommendation";
pub const STATE_CHANGE: &str = "EC2 Instance State-change Notification";
pub const HEALTH_EVENT: &str = "AWS Health Event";

/// What one message asks of the provisioner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The instance is reclaimed in two minutes.
    SpotInterruption { instance_id: String },
    /// The instance is at elevated risk of interruption.
    Rebalance { instance_id: String },
    /// AWS Health: maintenance (retirement, reboot) scheduled on these instances.
    ScheduledChange { instance_ids: Vec<String> },
    /// The instance entered `state` (pending, running, stopping, stopped,
    /// shutting-down, terminated).
    StateChange { instance_id: String, state: String },
    /// A well-formed event of a kind that needs nothing (its `source/detail-type`).
    Ignored(String),
}

/// Why a body is not a usable event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed interruption message: {0}")]
pub struct Malformed(pub String);

impl Notice {
    /// The metric label of the kind (bounded: never the event's own text).
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::SpotInterruption { .. } => "spot_interruption",
            Notice::Rebalance { .. } => "rebalance",
            Notice::ScheduledChange { .. } => "scheduled_change",
            Notice::StateChange { .. } => "state_change",
            Notice::Ignored(_) => "ignored",
        }
    }

    /// The instances it is about.
    pub fn instance_ids(&self) -> Vec<&str> {
        match self {
            Notice::SpotInterruption { instance_id }
            | Notice::Rebalance { instance_id }
            | Notice::StateChange { instance_id, .. } => vec![instance_id.as_str()],
            Notice::ScheduledChange { instance_ids } => {
                instance_ids.iter().map(String::as_str).collect()
            }
            Notice::Ignored(_) => Vec::new(),
        }
    }
}

/// Whether a state change means the instance is going away.
pub fn is_stopping_state(state: &str) -> bool {
    matches!(
        state,
        "stopping" | "stopped" | "shutting-down" | "terminated"
    )
}

fn malformed(reason: impl Into<String>) -> Malformed {
    Malformed(reason.into())
}

fn str_field<'a>(value: &'a Value, key: &str, what: &str) -> Result<&'a str, Malformed> {
    match value.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.as_str()),
        Some(Value::String(_)) => Err(malformed(format!("{what}: empty {key}"))),
        Some(_) => Err(malformed(format!("{what}: {key} is not a string"))),
        None => Err(malformed(format!("{what}: no {key}"))),
    }
}

fn instance_id<'a>(detail: &'a Value, what: &str) -> Result<&'a str, Malformed> {
    let id = str_field(detail, "instance-id", what)?;
    if id.starts_with("i-") {
        Ok(id)
    } else {
        Err(malformed(format!("{what}: {id:?} is not an instance id")))
    }
}

/// Reads one SQS message body.
pub fn parse(body: &str) -> Result<Notice, Malformed> {
    let event: Value =
        serde_json::from_str(body).map_err(|e| malformed(format!("not JSON: {e}")))?;
    if !event.is_object() {
        return Err(malformed("not a JSON object"));
    }
    let source = str_field(&event, "source", "event")?;
    let detail_type = str_field(&event, "detail-type", "event")?;
    let detail = match event.get("detail") {
        Some(detail @ Value::Object(_)) => detail,
        Some(_) => return Err(malformed(format!("{detail_type}: detail is not an object"))),
        None => return Err(malformed(format!("{detail_type}: no detail"))),
    };
    match (source, detail_type) {
        ("aws.ec2", SPOT_INTERRUPTION) => Ok(Notice::SpotInterruption {
            instance_id: instance_id(detail, detail_type)?.to_owned(),
        }),
        ("aws.ec2", REBALANCE) => Ok(Notice::Rebalance {
            instance_id: instance_id(detail, detail_type)?.to_owned(),
        }),
        ("aws.ec2", STATE_CHANGE) => Ok(Notice::StateChange {
            instance_id: instance_id(detail, detail_type)?.to_owned(),
            state: str_field(detail, "state", detail_type)?.to_owned(),
        }),
        ("aws.health", HEALTH_EVENT) => scheduled_change(detail),
        _ => Ok(Notice::Ignored(format!("{source}/{detail_type}"))),
    }
}

/// An AWS Health event: only EC2 `scheduledChange`s matter.
fn scheduled_change(detail: &Value) -> Result<Notice, Malformed> {
    let service = detail.get("service").and_then(Value::as_str);
    let category = detail.get("eventTypeCategory").and_then(Value::as_str);
    if service != Some("EC2") || category != Some("scheduledChange") {
        return Ok(Notice::Ignored(format!(
            "aws.health/{}/{}",
            service.unwrap_or("-"),
            category.unwrap_or("-")
        )));
    }
    let entities = detail
        .get("affectedEntities")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("scheduled change: no affectedEntities list"))?;
    let instance_ids: Vec<String> = entities
        .iter()
        .filter_map(|e| e.get("entityValue").and_then(Value::as_str))
        .filter(|id| id.starts_with("i-"))
        .map(str::to_owned)
        .collect();
    if instance_ids.is_empty() {
        return Err(malformed(
            "scheduled change: no instance among affectedEntities",
        ));
    }
    Ok(Notice::ScheduledChange { instance_ids })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SPOT: &str = r#"{
        "version": "0",
        "id": "1e5527d7-bb36-4607-3370-4164db56a40e",
        "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "1970-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ec2:us-east-1b:instance/i-0b662ef9931388ba0"],
        "detail": {"instance-id": "i-0b662ef9931388ba0", "instance-action": "terminate"}
    }"#;

    const REBALANCE_BODY: &str = r#"{
        "version": "0",
        "id": "5f8d7d5e-1234-4c3e-9c5b-1f0e5d6a7b8c",
        "detail-type": "EC2 Instance Rebalance Recommendation",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-11-25T13:00:00Z",
        "region": "us-east-2",
        "resources": ["arn:aws:ec2:us-east-2:123456789012:instance/i-1234567890abcdef0"],
        "detail": {"instance-id": "i-1234567890abcdef0"}
    }"#;

    const STATE: &str = r#"{
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-11-25T13:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
        "detail": {"instance-id": "i-abcd1111", "state": "stopping"}
    }"#;

    const HEALTH: &str = r#"{
        "version": "0",
        "id": "121345678-1234-1234-1234-123456789012",
        "detail-type": "AWS Health Event",
        "source": "aws.health",
        "account": "123456789012",
        "time": "2026-11-25T13:00:00Z",
        "region": "us-west-2",
        "resources": ["i-abcd1111", "i-abcd2222"],
        "detail": {
            "eventArn": "arn:aws:health:us-west-2::event/EC2/EC2_INSTANCE_RETIREMENT_SCHEDULED/EC2_INSTANCE_RETIREMENT_SCHEDULED_ABC123",
            "service": "EC2",
            "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
            "eventTypeCategory": "scheduledChange",
            "startTime": "Tue, 25 Nov 2026 13:00:00 GMT",
            "endTime": "Tue, 25 Nov 2026 15:00:00 GMT",
            "eventDescription": [{"language": "en_US", "latestDescription": "retirement"}],
            "affectedEntities": [
                {"entityValue": "i-abcd1111"},
                {"entityValue": "i-abcd2222", "tags": {}}
            ]
        }
    }"#;

    #[test]
    fn spot_interruption_warning() {
        assert_eq!(
            parse(SPOT),
            Ok(Notice::SpotInterruption {
                instance_id: "i-0b662ef9931388ba0".into()
            })
        );
    }

    #[test]
    fn rebalance_recommendation() {
        let notice = parse(REBALANCE_BODY).unwrap();
        assert_eq!(
            notice,
            Notice::Rebalance {
                instance_id: "i-1234567890abcdef0".into()
            }
        );
        assert_eq!(notice.kind(), "rebalance");
    }

    #[test]
    fn state_change() {
        let notice = parse(STATE).unwrap();
        assert_eq!(
            notice,
            Notice::StateChange {
                instance_id: "i-abcd1111".into(),
                state: "stopping".into()
            }
        );
        assert!(is_stopping_state("stopping") && is_stopping_state("terminated"));
        assert!(!is_stopping_state("running") && !is_stopping_state("pending"));
    }

    #[test]
    fn health_scheduled_change() {
        let notice = parse(HEALTH).unwrap();
        assert_eq!(notice.instance_ids(), vec!["i-abcd1111", "i-abcd2222"]);
        assert_eq!(notice.kind(), "scheduled_change");
    }

    #[test]
    fn other_health_events_and_kinds_are_ignored() {
        let issue = HEALTH.replace("scheduledChange", "issue");
        assert!(matches!(parse(&issue), Ok(Notice::Ignored(_))));
        let rds = HEALTH.replace("\"service\": \"EC2\"", "\"service\": \"RDS\"");
        assert!(matches!(parse(&rds), Ok(Notice::Ignored(_))));
        let other = SPOT.replace(SPOT_INTERRUPTION, "EC2 Fleet Error");
        assert_eq!(
            parse(&other),
            Ok(Notice::Ignored("aws.ec2/EC2 Fleet Error".into()))
        );
        assert!(Notice::Ignored("x".into()).instance_ids().is_empty());
    }

    #[test]
    fn malformed_bodies() {
        for body in [
            "",
            "not json",
            "[]",
            "42",
            "{}",
            r#"{"source": "aws.ec2"}"#,
            r#"{"source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning"}"#,
            r#"{"source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning", "detail": []}"#,
            r#"{"source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning", "detail": {}}"#,
            r#"{"source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning", "detail": {"instance-id": 7}}"#,
            r#"{"source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning", "detail": {"instance-id": ""}}"#,
            r#"{"source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning", "detail": {"instance-id": "vol-1"}}"#,
            r#"{"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {"instance-id": "i-1"}}"#,
        ] {
            assert!(parse(body).is_err(), "{body:?} should be malformed");
        }
        let no_entities = HEALTH.replace("i-abcd", "vol-abcd");
        assert!(parse(&no_entities).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(body in ".*") {
            let _ = parse(&body);
        }

        #[test]
        fn arbitrary_details_never_panic(detail in "[ -~]{0,80}", kind in prop::sample::select(vec![SPOT_INTERRUPTION, REBALANCE, STATE_CHANGE, HEALTH_EVENT, "x"])) {
            let body = format!(r#"{{"source": "aws.ec2", "detail-type": "{kind}", "detail": {detail}}}"#);
            let _ = parse(&body);
        }
    }
}
