//! The crate's one `Error`: every fallible controller step returns it, and
//! its variant names the `reason` label of the failure metrics. The typed
//! errors of the pure rules (facts, budgets, launch plans) and of the AWS
//! adapters are its sources.

use spotwright_api::duration::DurationError;

use crate::model::facts::FactsError;

/// A Kubernetes or AWS step failed; each is retried by its loop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{verb} {object}: {source}")]
    Kube {
        /// What was being done: `patch`, `delete`, `evict`, `create`, ...
        verb: &'static str,
        /// The object, as `Kind name` or `namespace/name`.
        object: String,
        #[source]
        source: kube::Error,
    },
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] SdkCallError),
    /// EC2 describes no instance type with a price and an offering.
    #[error("EC2 describes no instance type with a known price and an offering in any zone")]
    EmptyCatalog,
    /// An EC2 answer the instance adapter could not use.
    #[error("EC2: {0}")]
    Instances(String),
    /// A NodeClaim could not be launched.
    #[error(transparent)]
    Launch(#[from] LaunchFailure),
    /// An object could not be read into the solver's model.
    #[error(transparent)]
    Facts(#[from] FactsError),
    /// A duration in a spec could not be read.
    #[error(transparent)]
    Duration(#[from] DurationError),
    /// An annotation the provisioner wrote cannot be read back.
    #[error("unreadable {key}: {reason}")]
    Annotation { key: &'static str, reason: String },
    /// The provisioner was started with settings that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// A Kubernetes failure of `verb` on `object`.
    pub fn kube(
        verb: &'static str,
        object: impl Into<String>,
    ) -> impl FnOnce(kube::Error) -> Error {
        let object = object.into();
        move |source| Error::Kube {
            verb,
            object,
            source,
        }
    }

    /// The `reason` label of the failure metrics.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } => match source {
                kube::Error::Api(status) if status.code == 409 => "conflict",
                kube::Error::Api(status) if status.code == 404 => "not_found",
                kube::Error::Api(_) => "kube_api",
                _ => "kube_transport",
            },
            Error::Aws(err) if err.is_throttling() => "aws_throttled",
            Error::Aws(_) => "aws",
            Error::EmptyCatalog => "empty_catalog",
            Error::Instances(_) => "ec2_instances",
            Error::Launch(failure) => failure.metric_reason(),
            Error::Facts(_) => "unreadable_object",
            Error::Duration(_) => "invalid_duration",
            Error::Annotation { .. } => "unreadable_annotation",
            Error::Config(_) => "config",
        }
    }

    /// Whether the API server refused a write because the object changed
    /// since it was read (409).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube { source: kube::Error::Api(status), .. } if status.code == 409)
    }

    /// Whether the API server said the object is gone.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Kube { source: kube::Error::Api(status), .. } if status.code == 404)
    }
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed AWS SDK call: which operation, the service's error code when it
/// sent one, and the full message chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct SdkCallError {
    /// The API operation, such as `CreateFleet`.
    pub operation: &'static str,
    /// The service's error code, such as `RequestLimitExceeded`; `None` for
    /// transport failures.
    pub code: Option<String>,
    pub message: String,
}

impl SdkCallError {
    /// Whether the service asked us to slow down.
    pub fn is_throttling(&self) -> bool {
        self.code.as_deref().is_some_and(is_throttling_code)
    }
}

/// Error codes AWS services use for "too many requests".
pub fn is_throttling_code(code: &str) -> bool {
    matches!(
        code,
        "RequestLimitExceeded"
            | "Throttling"
            | "ThrottlingException"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "SlowDown"
    )
}

/// Why a NodeClaim was not launched.
#[derive(Debug, thiserror::Error)]
pub enum LaunchFailure {
    /// Every allowed offering is out of capacity (or was marked so): the
    /// pods are solved again without them.
    #[error("no capacity: {0}")]
    NoCapacity(String),
    /// The NodeClass cannot launch yet (no AMI, subnets or security groups).
    #[error("NodeClass not ready: {0}")]
    NodeClassNotReady(String),
    #[error("{code}: {message}")]
    Failed { code: String, message: String },
}

impl LaunchFailure {
    /// For the `reason` label of the launch-failure metric: the EC2 error
    /// code when EC2 gave one.
    pub fn reason(&self) -> String {
        match self {
            LaunchFailure::Failed { code, .. } => code.clone(),
            other => other.metric_reason().to_owned(),
        }
    }

    fn metric_reason(&self) -> &'static str {
        match self {
            LaunchFailure::NoCapacity(_) => "no_capacity",
            LaunchFailure::NodeClassNotReady(_) => "nodeclass_not_ready",
            LaunchFailure::Failed { .. } => "launch_failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_failure() {
        let conflict = Error::kube("patch", "NodeClaim a")(kube::Error::Api(
            kube::core::Status::failure("changed", "Conflict")
                .with_code(409)
                .boxed(),
        ));
        assert_eq!(conflict.metric_reason(), "conflict");
        assert!(conflict.is_conflict());
        assert!(!conflict.is_not_found());
        assert!(conflict.to_string().starts_with("patch NodeClaim a: "));
        let throttled = Error::Aws(SdkCallError {
            operation: "CreateFleet",
            code: Some("RequestLimitExceeded".into()),
            message: "slow down".into(),
        });
        assert_eq!(throttled.metric_reason(), "aws_throttled");
        let launch = Error::from(LaunchFailure::Failed {
            code: "InvalidParameter".into(),
            message: "x".into(),
        });
        assert_eq!(launch.metric_reason(), "launch_failed");
        assert_eq!(
            LaunchFailure::NoCapacity("none".into()).reason(),
            "no_capacity"
        );
    }
}
