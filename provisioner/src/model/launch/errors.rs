//! What an EC2 launch error code means for the next attempt.

use std::time::Duration;

use spotwright_solver::model::CapacityType;

use crate::error::is_throttling_code;

/// One override CreateFleet could not fill (an entry of its `Errors` list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverrideError {
    pub capacity_type: CapacityType,
    pub instance_type: Option<String>,
    pub subnet_id: Option<String>,
    pub zone: Option<String>,
    pub code: String,
    pub message: String,
    pub class: ErrorClass,
}

/// How to react to a launch error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// EC2 has no capacity for that offering right now: mark the
    /// (capacity type, instance type, zone) unavailable and try others.
    Capacity,
    /// We are calling too fast: wait this long and retry the same launch.
    Throttled { retry_after: Duration },
    /// Anything else: the launch failed; the code says why.
    Failure,
}

/// Wait before retrying a throttled launch. The SDK has already retried
/// with its own backoff by the time a throttling code reaches us.
pub const THROTTLE_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Codes that mean "no capacity for this offering", not "bad request".
pub const CAPACITY_ERROR_CODES: [&str; 9] = [
    "InsufficientInstanceCapacity",
    "MaxSpotInstanceCountExceeded",
    "VcpuLimitExceeded",
    "UnfulfillableCapacity",
    "InsufficientFreeAddressesInSubnet",
    "SpotMaxPriceTooLow",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
];

pub fn classify(code: &str) -> ErrorClass {
    if CAPACITY_ERROR_CODES.contains(&code) {
        ErrorClass::Capacity
    } else if is_throttling_code(code) {
        ErrorClass::Throttled {
            retry_after: THROTTLE_RETRY_AFTER,
        }
    } else {
        ErrorClass::Failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_codes_mark_offerings() {
        for code in [
            "InsufficientInstanceCapacity",
            "MaxSpotInstanceCountExceeded",
            "VcpuLimitExceeded",
            "UnfulfillableCapacity",
            "InsufficientFreeAddressesInSubnet",
            "SpotMaxPriceTooLow",
        ] {
            assert_eq!(classify(code), ErrorClass::Capacity, "{code}");
        }
    }

    #[test]
    fn throttling_backs_off_and_the_rest_fail() {
        assert!(matches!(
            classify("RequestLimitExceeded"),
            ErrorClass::Throttled { .. }
        ));
        assert!(matches!(
            classify("ThrottlingException"),
            ErrorClass::Throttled { .. }
        ));
        assert_eq!(
            classify("InvalidLaunchTemplateName.NotFoundException"),
            ErrorClass::Failure
        );
        assert_eq!(classify("UnauthorizedOperation"), ErrorClass::Failure);
    }
}
