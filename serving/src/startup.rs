//! Start-up steps every server takes, each failing with a one-line reason
//! so that a bad flag or an unreachable API server stops the program at once.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

/// How long the API server has to answer at start.
pub const API_SERVER_DEADLINE: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("binding --{flag} {addr}: {source}")]
    Bind {
        flag: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("configuring the Kubernetes client (KUBECONFIG or in-cluster): {0}")]
    KubeConfig(kube::Error),
    #[error("the Kubernetes API server did not answer within {}s", API_SERVER_DEADLINE.as_secs())]
    ApiServerTimeout,
    #[error("the Kubernetes API server is unreachable: {0}")]
    ApiServerUnreachable(kube::Error),
}

/// Binds the listener a `--<flag>` names.
pub async fn bind(flag: &'static str, addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { flag, addr, source })
}

/// A client from `KUBECONFIG` or the in-cluster account, once the API server has answered.
pub async fn kube_client() -> Result<kube::Client, StartupError> {
    let client = kube::Client::try_default()
        .await
        .map_err(StartupError::KubeConfig)?;
    tokio::time::timeout(API_SERVER_DEADLINE, client.apiserver_version())
        .await
        .map_err(|_| StartupError::ApiServerTimeout)?
        .map_err(StartupError::ApiServerUnreachable)?;
    Ok(client)
}

/// The end of every program's `main`: a failure is logged, printed as one
/// line on stderr (the whole cause chain with `{:#}`) and exits with 1.
pub fn exit_on_error<E: std::fmt::Display>(program: &str, result: Result<(), E>) {
    if let Err(err) = result {
        tracing::error!("{err:#}");
        eprintln!("{program}: {err:#}");
        std::process::exit(1);
    }
}
