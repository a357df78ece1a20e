//! Turns any AWS SDK error into the crate's [`SdkCallError`]: which
//! operation, the service's error code when it sent one, and the full
//! message chain.

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};

pub use crate::error::{is_throttling_code, SdkCallError};

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
