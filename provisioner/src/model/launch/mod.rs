//! Launch planning: which (instance type, subnet) overrides go into a
//! CreateFleet request, and which offerings recent capacity errors rule out.
//! Pure: the AWS calls live in `crate::act::aws::fleet`.

pub mod errors;
pub mod overrides;
pub mod request;
pub mod unavailable;

/// Whether an instance may already run for a claim about to be launched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// This process created the claim a moment ago and launched nothing for
    /// it yet: CreateFleet at once. (Its UID is the client token, so even a
    /// repeat would not launch twice.)
    Skip,
    /// An earlier attempt or process may have launched it: look for its
    /// instance by tags first.
    First,
}

pub use errors::{classify, ErrorClass, OverrideError};
pub use overrides::{plan_overrides, LaunchPlan, NewNodeLaunch, Override, PlanError};
pub use request::launch_from_requirements;
pub use unavailable::{OfferingKey, UnavailableOfferings};
