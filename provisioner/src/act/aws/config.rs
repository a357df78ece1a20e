//! AWS SDK configuration from the standard environment (`AWS_REGION`,
//! `AWS_ENDPOINT_URL`, the credentials chain), over rustls with ring.

use aws_config::BehaviorVersion;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

/// The HTTP client every Spotwright AWS client uses: hyper over rustls with
/// ring (the SDK crates are built without their default TLS stack).
pub fn http_client() -> aws_sdk_ec2::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The shared SDK configuration, loaded once at start-up.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .load()
        .await
}
