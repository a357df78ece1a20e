//! The local cluster's node agent, and what Spotwright's end-to-end tests
//! share: the cluster, the programs run as processes, and AWS clients.

pub mod aws;
pub mod fault;
pub mod harness;
pub mod node_agent;
pub mod scale;
pub mod timeline;

/// A Kubernetes client from the environment (KUBECONFIG or in-cluster)
/// that names itself `agent` in the API server's audit log: kube sends no
/// User-Agent of its own.
pub async fn named_client(agent: &'static str) -> Result<kube::Client, kube::Error> {
    use http::{header::USER_AGENT, HeaderValue};
    let mut config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    config
        .headers
        .push((USER_AGENT, HeaderValue::from_static(agent)));
    kube::Client::try_from(config)
}
