//! Launch planning: which (instance type, subnet) overrides go into a
//! CreateFleet request, and which offerings recent capacity errors rule out.
//! Pure: the AWS calls live in `crate::act::aws::fleet`.

pub mod errors;
pub mod overrides;
pub mod request;
pub mod unavailable;

pub use errors::{classify, ErrorClass, OverrideError};
pub use overrides::{plan_overrides, LaunchPlan, NewNodeLaunch, Override, PlanError};
pub use request::launch_from_requirements;
pub use unavailable::{OfferingKey, UnavailableOfferings};
