//! One error shape for every failed AWS call: which operation, the service's
//! error code when it sent one, and the full message chain.

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};

/// A failed SDK call.
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

/// Maps any SDK error to an [`SdkCallError`] named after `operation`.
pub fn sdk_error<E>(operation: &'static str) -> impl Fn(E) -> SdkCallError
where
    E: ProvideErrorMetadata + std::error::Error,
{
    move |err| SdkCallError {
        operation,
        code: err.code().map(str::to_owned),
        message: DisplayErrorContext(&err).to_string(),
    }
}
