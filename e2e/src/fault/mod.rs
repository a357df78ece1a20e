//! Capacity faults for end-to-end tests: the pure parts of
//! `spotwright-fault-proxy`, which sits between Spotwright and moto and
//! answers EC2 `CreateFleet` calls for chosen instance types the way EC2
//! answers an `instant` fleet that hit `InsufficientInstanceCapacity`.
//!
//! - [`form`]: the Query-protocol form body.
//! - [`fleet`]: reading a `CreateFleet`, choosing the faulted overrides and
//!   rewriting the request without them.
//! - [`xml`]: the `CreateFleetResponse` with an `errorSet`.
//! - [`state`]: the fault set and the call counters.

pub mod fleet;
pub mod form;
pub mod state;
pub mod xml;

use fleet::{CreateFleet, FaultedOverride};
use state::FaultState;

/// Why the proxy cannot read or answer a request.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("form body is not valid UTF-8")]
    NotUtf8,
    #[error("malformed %-escape in form component {0:?}")]
    BadEscape(String),
    #[error("list index in {0:?} is not a positive integer")]
    BadIndex(String),
    #[error("{0:?} is not an instance type name")]
    BadInstanceType(String),
    #[error("more than {0} instance types in one list")]
    TooManyTypes(usize),
    #[error("upstream CreateFleet answer has no {0}")]
    UpstreamShape(&'static str),
}

/// The reply to an `instant` `CreateFleet` whose every override is faulted.
pub fn all_faulted_reply(
    state: &FaultState,
    fleet: &CreateFleet,
    faulted: &[FaultedOverride],
) -> String {
    let request_id = state.new_id("");
    let fleet_id = state.new_id("fleet-");
    xml::create_fleet_response(&xml::FleetResponse {
        request_id: &request_id,
        fleet_id: &fleet_id,
        faulted,
        lifecycle: fleet.lifecycle(),
        upstream_errors: "",
        instances: "",
    })
}

/// The reply to a partly faulted `CreateFleet`: moto's answer to the
/// rewritten request (its fleet id, instances and any errors of its own)
/// with our errors added.
pub fn merge_reply(
    state: &FaultState,
    fleet: &CreateFleet,
    faulted: &[FaultedOverride],
    upstream: &str,
) -> Result<String, FaultError> {
    let fleet_id = xml::element_content(upstream, "fleetId")
        .map(xml::unescape)
        .ok_or(FaultError::UpstreamShape("fleetId"))?;
    let request_id = xml::element_content(upstream, "requestId")
        .map(xml::unescape)
        .unwrap_or_else(|| state.new_id(""));
    Ok(xml::create_fleet_response(&xml::FleetResponse {
        request_id: &request_id,
        fleet_id: &fleet_id,
        faulted,
        lifecycle: fleet.lifecycle(),
        upstream_errors: xml::element_content(upstream, "errorSet").unwrap_or(""),
        instances: xml::element_content(upstream, "fleetInstanceSet").unwrap_or(""),
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::fleet::{decide, Decision};
    use super::form::Form;
    use super::*;

    const BODY: &str = "Action=CreateFleet&Type=instant\
        &LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateName=lt\
        &LaunchTemplateConfigs.1.Overrides.1.InstanceType=m5.large\
        &LaunchTemplateConfigs.1.Overrides.2.InstanceType=c5.large\
        &TargetCapacitySpecification.DefaultTargetCapacityType=spot";

    #[test]
    fn merge_keeps_moto_fleet_and_instances() {
        let state = FaultState::new(BTreeSet::new());
        let insufficient = state::parse_type_list("m5.large").unwrap();
        let (fleet, decision) =
            decide(&Form::parse(BODY.as_bytes()).unwrap(), &insufficient).unwrap();
        let Decision::Partial { faulted, .. } = decision else {
            panic!("expected a partial fault, got {decision:?}");
        };
        let moto = "<CreateFleetResponse><fleetId>fleet-1</fleetId><fleetInstanceSet><item>\
            <instanceIds><item>i-1</item></instanceIds><instanceType>c5.large</instanceType>\
            </item></fleetInstanceSet><requestId>request-id</requestId></CreateFleetResponse>";
        let reply = merge_reply(&state, &fleet, &faulted, moto).unwrap();
        assert!(reply.contains("<requestId>request-id</requestId><fleetId>fleet-1</fleetId>"));
        assert!(reply.contains("<instanceType>m5.large</instanceType>"));
        assert!(reply.contains("<item>i-1</item>"));
        assert!(matches!(
            merge_reply(&state, &fleet, &faulted, "<html>oops</html>"),
            Err(FaultError::UpstreamShape("fleetId"))
        ));
    }

    #[test]
    fn all_faulted_reply_has_a_fleet_id_and_no_instances() {
        let state = FaultState::new(BTreeSet::new());
        let insufficient = state::parse_type_list("m5.large,c5.large").unwrap();
        let (fleet, decision) =
            decide(&Form::parse(BODY.as_bytes()).unwrap(), &insufficient).unwrap();
        let Decision::AllFaulted(faulted) = decision else {
            panic!("expected every override faulted, got {decision:?}");
        };
        let reply = all_faulted_reply(&state, &fleet, &faulted);
        assert!(reply.contains("<fleetId>fleet-"));
        assert!(reply.contains("<fleetInstanceSet></fleetInstanceSet>"));
        assert_eq!(reply.matches("<lifecycle>spot</lifecycle>").count(), 2);
    }
}
