//! The interruption queue's URL.

use std::time::Duration;

/// The queue's URL: a URL as is, a name through GetQueueUrl (retried with
/// backoff, 1 s doubling to 1 min, until it resolves).
pub async fn resolve_queue_url(sqs: &aws_sdk_sqs::Client, queue: &str) -> String {
    if queue.starts_with("https://") || queue.starts_with("http://") {
        return queue.to_owned();
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        match sqs.get_queue_url().queue_name(queue).send().await {
            Ok(output) => {
                if let Some(url) = output.queue_url {
                    return url;
                }
                tracing::warn!(queue, "GetQueueUrl returned no URL");
            }
            Err(err) => {
                tracing::warn!(queue, error = %aws_sdk_sqs::error::DisplayErrorContext(&err), "GetQueueUrl failed; retrying")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}
