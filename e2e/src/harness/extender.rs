//! `spotwright-extender` as a local process on the port the local cluster's
//! `spotwright-scheduler` calls (see e2e/plane/scheduler/spotwright-scheduler.yaml).

use std::process::Command;
use std::time::Duration;

use super::process::{eventually, Process};
use super::webhook::get;
use super::Env;

pub const EXTENDER_PORT: u16 = 18888;
pub const EXTENDER_METRICS_PORT: u16 = 18081;

pub struct Extender {
    pub process: Process,
}

impl Extender {
    /// Starts the extender and waits until its caches have synced (`/readyz`).
    pub async fn start(env: &'static Env, name: &str) -> Extender {
        Self::start_with(env, name, &[]).await
    }

    /// Starts the extender with extra flags (such as scoring weights).
    pub async fn start_with(env: &'static Env, name: &str, flags: &[&str]) -> Extender {
        let mut command = Command::new(env.bin("spotwright-extender"));
        command
            .args(flags)
            .args(["--listen", &format!("127.0.0.1:{EXTENDER_PORT}")])
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{EXTENDER_METRICS_PORT}"),
            ])
            .env("KUBECONFIG", &env.kubeconfig)
            .env("RUST_LOG", "info");
        let log = env.state.join("e2e").join(format!("{name}-extender.log"));
        std::fs::create_dir_all(env.state.join("e2e")).expect("e2e state dir");
        let process = Process::spawn("spotwright-extender", command, &log);
        eventually(
            "the extender's /readyz",
            Duration::from_secs(30),
            || async {
                get(&format!("http://127.0.0.1:{EXTENDER_METRICS_PORT}/readyz"))
                    .await
                    .is_some_and(|(status, _)| status == 200)
            },
        )
        .await;
        Extender { process }
    }

    pub async fn metrics(&self) -> String {
        get(&format!("http://127.0.0.1:{EXTENDER_METRICS_PORT}/metrics"))
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }
}
